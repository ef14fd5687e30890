"""The web dashboard over the marts and the pipeline's run tables (Streamlit; `app.py` is the entry point)."""
