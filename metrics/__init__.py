"""Pure computation over the store: filters, KPIs, statistics and the metric catalogue.
Nothing here imports Streamlit or Plotly."""
