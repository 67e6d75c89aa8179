# footfall (CLI, sync worker) in a container; docker-compose.yml runs the whole pipeline.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY footfall ./footfall
COPY ingest ./ingest
COPY sync ./sync
COPY query ./query
COPY sql ./sql
RUN pip install --no-cache-dir -e . && useradd --create-home footfall
USER footfall
ENV FOOTFALL_HOME=/home/footfall/.footfall
CMD ["footfall", "sync", "worker", "--metrics-host", "0.0.0.0"]
