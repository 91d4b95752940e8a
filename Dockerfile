# The dashboard for a team: signed in (OIDC), one DuckDB file per workspace on a volume.
#   docker build -t customer-marketing .
#   docker run -p 8501:8501 -v cm-data:/data \
#     -v "$PWD/.streamlit/secrets.toml:/app/.streamlit/secrets.toml:ro" customer-marketing
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none \
    STREAMLIT_CLIENT_TOOLBAR_MODE=viewer \
    CM_DB_PATH=/data/warehouse.duckdb

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY app.py tasks.py ./
COPY data/*.py data/
COPY metrics/ metrics/
COPY pages/ pages/
COPY .streamlit/config.toml .streamlit/config.toml

# A user without a login shell owns only /data (the volume with the DuckDB files).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cm \
    && mkdir -p /data && chown cm:cm /data
USER cm
VOLUME ["/data"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status == 200 else 1)"

CMD ["python", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
