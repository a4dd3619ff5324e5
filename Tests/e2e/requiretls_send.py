#!/usr/bin/env python3
"""Submits one message for the REQUIRETLS end-to-end tests (RFC 8689); prints one JSON line.

With --starttls the session is upgraded first (certificate not checked: the test server's is
self-signed). With --requiretls, MAIL FROM carries the REQUIRETLS parameter. The JSON says
whether REQUIRETLS was advertised after the last EHLO, and whether the message was accepted
(with the reply code and text when it was not).
"""
import argparse
import json
import smtplib
import ssl
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--subject", required=True)
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--requiretls", action="store_true")
    parser.add_argument("--header", action="append")
    args = parser.parse_args()
    lines = [f"From: {args.user}", f"To: {args.to}", f"Subject: {args.subject}",
             f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}",
             f"Message-ID: <{time.time_ns()}.requiretls@e2e.test>"] + (args.header or [])
    message = ("\r\n".join(lines) + "\r\n\r\nREQUIRETLS test.\r\n").encode()
    client = smtplib.SMTP("127.0.0.1", args.port, local_hostname="laptop.e2e.test", timeout=60)
    result = {}
    try:
        client.ehlo()
        if args.starttls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client.starttls(context=context)
            client.ehlo()
        result["ehlo_requiretls"] = client.has_extn("requiretls")
        client.login(args.user, args.password)
        options = ["REQUIRETLS"] if args.requiretls else []
        client.sendmail(args.user, [args.to], message, mail_options=options)
        result["accepted"] = True
    except smtplib.SMTPSenderRefused as error:
        result.update(accepted=False, code=error.smtp_code, text=error.smtp_error.decode(errors="replace"))
    except smtplib.SMTPRecipientsRefused as error:
        code, text = list(error.recipients.values())[0]
        result.update(accepted=False, code=code, text=text.decode(errors="replace"))
    except smtplib.SMTPDataError as error:
        result.update(accepted=False, code=error.smtp_code, text=error.smtp_error.decode(errors="replace"))
    finally:
        try:
            client.quit()
        except Exception:
            pass
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
