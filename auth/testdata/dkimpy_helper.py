# Helper for auth's DKIM interoperability test (dkim_interop_test.go): runs
# Debian's python3-dkim (dkimpy) on a request read as JSON from stdin and
# writes the answer as JSON to stdout.
#
#   {"op": "verify", "message": <base64>, "records": {name: txt}}
#       -> {"ok": true|false}
#   {"op": "sign", "message": <base64>, "domain": d, "selector": s,
#    "alg": "rsa-sha256"|"ed25519-sha256", "key": <PEM or base64 seed>,
#    "canon": ["relaxed", "simple"]}
#       -> {"message": <base64 signed message>}
import base64
import json
import sys

import dkim

req = json.load(sys.stdin)
msg = base64.b64decode(req["message"])
if req["op"] == "verify":
    records = req["records"]

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        txt = records.get(name.rstrip("."))
        return txt.encode() if txt is not None else None

    ok = dkim.verify(msg, dnsfunc=dnsfunc)
    json.dump({"ok": bool(ok)}, sys.stdout)
elif req["op"] == "sign":
    canon = tuple(c.encode() for c in req.get("canon", ["relaxed", "simple"]))
    sig = dkim.sign(msg, req["selector"].encode(), req["domain"].encode(),
                    req["key"].encode(), signature_algorithm=req["alg"].encode(),
                    canonicalize=canon,
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    json.dump({"message": base64.b64encode(sig + msg).decode()}, sys.stdout)
else:
    sys.exit("unknown op " + req["op"])
