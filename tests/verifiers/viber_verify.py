"""Checks a Viber Bot callback with the official `viberbot` SDK.

Usage: viber_verify.py AUTH_TOKEN SIGNATURE < body
Exit 0 when the SDK accepts the signature and parses the callback.
"""
import sys

from viberbot import Api
from viberbot.api.bot_configuration import BotConfiguration

token, signature = sys.argv[1], sys.argv[2]
body = sys.stdin.buffer.read()
api = Api(BotConfiguration(name="herald-test", avatar="", auth_token=token))
if not api.verify_signature(body, signature):
    print("signature rejected by viberbot", file=sys.stderr)
    sys.exit(1)
request = api.parse_request(body.decode("utf-8"))
print(type(request).__name__)
