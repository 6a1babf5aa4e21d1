"""bench/stages.py: each profiler sample goes to the stage its innermost known frame names."""

from __future__ import annotations

from bench.stages import STAGE_NAMES, classify, samples

MAIN = "thread (7639): MainThread"
LOOP = "Runner.run (asyncio/runners.py:118)"
APP = [MAIN, LOOP, "RequestContextMiddleware.__call__ (app/logs.py:100)"]


def test_innermost_known_frame_names_the_stage() -> None:
    drift = [
        "thread (7662): inference_0",
        "ServedModel._call_each (app/serving/runner.py:146)",
        "CallObserver.scored (app/serving/observer.py:60)",
        "DriftCounter._numeric_counts (app/serving/drift.py:120)",
        "_sum (numpy/_core/_methods.py:51)",
    ]
    assert classify(drift) == "metrics (instrumentator, drift, counters)"
    scorer = [*drift[:2], "compile_scorer.<locals>.score (app/serving/onepass.py:91)"]
    scorer.append("argmax (numpy/_core/fromnumeric.py:1300)")
    assert classify(scorer) == "model call"
    send = [
        *APP,
        "PrometheusInstrumentatorMiddleware.__call__"
        " (prometheus_fastapi_instrumentator/middleware.py:170)",
    ]
    send.append("RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:480)")
    assert classify(send) == "HTTP server, event loop (uvicorn, uvloop)"
    assert classify([*APP, "Logger.info (logging/__init__.py:1500)"]) == "access log, request id"
    assert classify([*APP, "decode_json (app/api/codecs/body.py:70)"]) == "parse (body, JSON)"


def test_the_event_loop_own_code_and_unknown_frames() -> None:
    assert classify([MAIN, LOOP]) == "HTTP server, event loop (uvicorn, uvloop)"
    assert classify(["thread (7662): inference_0"]) == "other"
    # The CLI frames under every main-thread stack do not make a sample the handler's.
    cli = [
        MAIN,
        "serve (app/cli/serve.py:50)",
        LOOP,
        "Starlette.__call__ (starlette/applications.py:90)",
    ]
    assert classify(cli) == "framework (FastAPI, Starlette middlewares)"


def test_samples_add_up_per_stage() -> None:
    raw = "\n".join(
        [
            ";".join([*APP, "decode_json (app/api/codecs/body.py:70)"]) + " 3",
            ";".join([MAIN, LOOP]) + " 5",
            ";".join([*APP, "decode_json (app/api/codecs/body.py:71)"]) + " 2",
        ]
    )
    counts = samples(raw)
    assert counts["parse (body, JSON)"] == 5
    assert counts["HTTP server, event loop (uvicorn, uvloop)"] == 5
    assert set(counts) <= set(STAGE_NAMES)
