"""Protocol codecs: a body in, model input to ``app.serving.scoring``, its result back out."""
