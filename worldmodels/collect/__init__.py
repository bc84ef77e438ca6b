"""Stage 1, `wm collect`: the real-env driver and parallel, resumable episode collection."""
