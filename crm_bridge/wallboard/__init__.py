"""The live wallboard: queues and agents as they are now, pushed over a WebSocket."""
