#!/usr/bin/env python3
"""Drive an SMTP dialogue with Python's smtplib, as a real client would.

usage: dialog.py HOST PORT SOURCE_IP < commands

Each input line is one command sent with smtplib's docmd after EHLO; each
output line is "CODE TEXT" for it. The line "SEND from to1,to2 OPTS" sends a
small message with SMTP.sendmail (mail options such as SMTPUTF8 or RET=HDRS,
separated by '+') and prints "SENT" or the refusal. The line "MESSAGE" sends
DATA and a small message for the transaction built by the commands before it
(for addresses smtplib's sendmail would rewrite, such as quoted local parts)
and prints the final reply as "CODE TEXT".
"""
import smtplib
import sys


def main():
    host, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = smtplib.SMTP(host, port, source_address=(src, 0), timeout=30)
    s.ehlo("python.client.test")
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        if line.startswith("SEND "):
            parts = line.split(" ")
            sender, rcpts = parts[1], parts[2].split(",")
            opts = parts[3].split("+") if len(parts) > 3 else []
            msg = ("From: <%s>\r\nTo: <%s>\r\nSubject: from smtplib\r\n"
                   "Message-ID: <smtplib-%s@client.test>\r\n\r\nHello.\r\n") % (sender, rcpts[0], len(rcpts))
            try:
                refused = s.sendmail(sender, rcpts, msg.encode("utf-8"), mail_options=opts)
                print("SENT", sorted(refused.keys()))
            except smtplib.SMTPException as e:
                print("REFUSED", e)
            continue
        if line == "MESSAGE":
            code, text = s.data(b"Subject: from smtplib\r\nMessage-ID: <smtplib-data@client.test>\r\n\r\nHello.\r\n")
            print(code, text.decode("utf-8", "replace").replace("\n", " "))
            sys.stdout.flush()
            continue
        code, text = s.docmd(line)
        print(code, text.decode("utf-8", "replace").replace("\n", " "))
        sys.stdout.flush()
    s.quit()


if __name__ == "__main__":
    main()
