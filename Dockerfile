# One image for every Insight process; the command picks the role (see docker-compose.yml).

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY core core
COPY realtime realtime
COPY edge edge
COPY demo demo
COPY api api
COPY domain domain
COPY workers workers
COPY cli cli
COPY stripe_local stripe_local
RUN /opt/venv/bin/pip install -c constraints.txt .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 ENVIRONMENT=production
RUN groupadd --system insight && useradd --system --gid insight --home-dir /app insight \
    && mkdir -p /app/var && chown insight:insight /app/var
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER insight
EXPOSE 8000 8001 9101
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
