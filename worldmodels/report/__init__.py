"""`wm report`: one self-contained HTML page of a run, with plots."""
