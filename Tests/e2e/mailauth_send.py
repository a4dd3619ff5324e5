#!/usr/bin/env python3
"""Sends one message for the sender-authentication end-to-end tests; prints one JSON line.

  submit: AUTH PLAIN on a submission port (loopback, so no TLS needed), then send.
  send:   plain SMTP to an inbound port, as another organisation's server would.

The JSON says whether the server accepted the message and, if not, the reply code and text.
"""
import argparse
import json
import smtplib
import sys
import time


def message(args):
    lines = [f"From: {args.from_header}", f"To: {args.to}", f"Subject: {args.subject}",
             f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}",
             f"Message-ID: <{time.time_ns()}.e2e@{args.from_header.split('@')[-1]}>"]
    for extra in args.header or []:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\nA message to check sender authentication.\r\n").encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["submit", "send"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--mail-from", required=True)
    parser.add_argument("--from-header", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--subject", required=True)
    parser.add_argument("--helo", default="mx.sender.test")
    parser.add_argument("--header", action="append")
    args = parser.parse_args()
    client = smtplib.SMTP("127.0.0.1", args.port, local_hostname=args.helo, timeout=60)
    try:
        client.ehlo()
        if args.mode == "submit":
            client.login(args.user, args.password)
        client.sendmail(args.mail_from, [args.to], message(args))
        result = {"accepted": True}
    except smtplib.SMTPDataError as error:
        result = {"accepted": False, "code": error.smtp_code, "text": error.smtp_error.decode(errors="replace")}
    except smtplib.SMTPRecipientsRefused as error:
        code, text = list(error.recipients.values())[0]
        result = {"accepted": False, "code": code, "text": text.decode(errors="replace")}
    finally:
        try:
            client.quit()
        except Exception:
            pass
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
