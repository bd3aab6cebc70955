"""web/: what an operator looks at: the read-only ``/slots`` API (FastAPI), the Streamlit
dashboard with its per-date cache, and the lake statistics both share (``slot_stats``)."""
