"""The consumer loop: fetch, decode, schedule, commit, pause/resume, DLQ, shutdown."""
