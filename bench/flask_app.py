"""The workshop's original design, for comparison: Flask under gunicorn, one
pooled INCR per /ping (the original did GET-then-SET, which also lost counts)."""

import os

import redis
from flask import Flask

app = Flask(__name__)
pool = redis.ConnectionPool(host="127.0.0.1", port=int(os.environ.get("REDIS_PORT", "6379")))


@app.route("/")
def hello():
    return "Hello!"


@app.route("/ping")
def ping():
    return f"{redis.Redis(connection_pool=pool).incr('ping')}\n"
