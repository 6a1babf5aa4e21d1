"""Programs that run beside the server, never inside it: demo traffic, the alert receiver."""
