"""``wm play``: a person drives inside a run's dream from a browser (``session.py``: the dream, the
real env beside it, the agent that can take the wheel, recordings; ``server.py``: the page and its
WebSocket); ``record.py``: ``wm dream --record``'s videos of an agent's dreams beside its real episodes."""
