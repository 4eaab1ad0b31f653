"""Read a DSN on standard input with Python's standard email package and
print, as JSON, what a Python program sees of it: the report's media type
and report-type, each part's media type, the per-message and
per-recipient fields of the delivery-status part, the returned message's
Subject, and every defect the parser noted."""
import email
import json
import sys
from email import policy

msg = email.message_from_binary_file(sys.stdin.buffer, policy=policy.default)
out = {
    "content_type": msg.get_content_type(),
    "report_type": msg.get_param("report-type"),
    "subject": str(msg["Subject"]),
    "auto_submitted": str(msg["Auto-Submitted"]),
    "parts": [p.get_content_type() for p in msg.iter_parts()],
    "per_message": {},
    "recipients": [],
    "returned_subject": None,
    "defects": [],
}
for part in msg.walk():
    out["defects"] += [type(d).__name__ for d in part.defects]
    if part is msg:
        continue
    if part.get_content_type() == "message/delivery-status":
        blocks = part.get_payload()
        out["per_message"] = {k: str(v) for k, v in blocks[0].items()}
        for block in blocks[1:]:
            out["recipients"].append({k: str(v) for k, v in block.items()})
    if part.get_content_type() == "message/rfc822":
        out["returned_subject"] = str(part.get_payload(0)["Subject"])
    if part.get_content_type() == "text/plain" and "text" not in out:
        out["text"] = part.get_content()
print(json.dumps(out))
