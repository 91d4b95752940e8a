"""Ingestion and storage. Nothing here imports Streamlit or Plotly."""
