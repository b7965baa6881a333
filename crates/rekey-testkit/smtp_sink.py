"""A real SMTP server for tests: aiosmtpd on loopback, writing every accepted message to a
directory.

    python3 smtp_sink.py OUTPUT_DIR [--port N] [--tls starttls|implicit --cert C --key K]
                                    [--auth USER:PASSWORD]

Listens on 127.0.0.1:N (default 0: any free port), prints "PORT <n>" once listening, and
serves until killed or until its standard input closes. With --tls starttls the server offers
and requires STARTTLS; with --tls implicit it speaks TLS from the first byte. With --auth it
offers AUTH PLAIN/LOGIN (after TLS, when TLS is on) and requires those credentials. Each accepted message is written
atomically as OUTPUT_DIR/<n>.eml (the DATA as received, CRLF line ends) with
OUTPUT_DIR/<n>.json beside it ({"mail_from": ..., "rcpt_tos": [...]}) written first.

Recipients steer failures, so tests can see real SMTP replies:
  reject@...   → 550 at RCPT (permanent)
  tempfail@... → 451 at RCPT (transient)
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local == "reject":
            return "550 5.1.1 mailbox unavailable"
        if local == "tempfail":
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, str(self.count))
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.replace(base + ".eml.tmp", base + ".eml")
        return "250 Message accepted for delivery"


def authenticator_for(expected):
    user, password = expected.split(":", 1)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            getattr(auth_data, "login", None) == user.encode()
            and getattr(auth_data, "password", None) == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


async def main():
    # aiosmtpd warns about AUTH without STARTTLS (here: over implicit TLS, which it cannot see)
    # and about its own deprecated attributes; neither concerns the tests.
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", choices=["starttls", "implicit"])
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth")
    args = parser.parse_args()
    os.makedirs(args.directory, exist_ok=True)
    handler = Sink(args.directory)

    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    options = {"hostname": "sink.test", "decode_data": False}
    if args.tls == "starttls":
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        options.update(
            authenticator=authenticator_for(args.auth),
            auth_required=True,
            # Over implicit TLS the session is encrypted although aiosmtpd cannot tell.
            auth_require_tls=args.tls == "starttls",
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, **options),
        host="127.0.0.1",
        port=args.port,
        ssl=context if args.tls == "implicit" else None,
    )
    print("PORT", server.sockets[0].getsockname()[1], flush=True)

    # Stop when the parent goes away (its end of our stdin closes).
    stdin_closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: sys.stdin.buffer.read1(1) or stdin_closed.set())
    await stdin_closed.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
