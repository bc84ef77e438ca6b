"""Stage 4, `wm eval`: any agent in the real env, seeded and parallel; videos."""
