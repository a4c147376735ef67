#!/usr/bin/python3
"""The other side of mailauth's DKIM interop tests, on dkimpy (Debian's
python3-dkim) and PyNaCl for Ed25519.

  dkimpy.py sign SELECTOR DOMAIN KEYFILE ALGORITHM CANON [length] < msg
      prints the DKIM-Signature field. KEYFILE is a PKCS#1 PEM RSA key, or
      an Ed25519 seed in base64; ALGORITHM rsa-sha256 or ed25519-sha256;
      CANON header/body, e.g. relaxed/simple; "length" adds l=.
  dkimpy.py verify ZONEFILE < msg
      prints "pass" or "fail" for each DKIM-Signature field, in order
      (the reason for a fail on standard error).
      ZONEFILE has "name<TAB>text" lines, the TXT records dkimpy may ask.
"""
import sys

import dkim


def sign(selector, domain, keyfile, algorithm, canon, length=False):
    msg = sys.stdin.buffer.read()
    with open(keyfile, "rb") as f:
        key = f.read().strip()
    h, b = canon.encode().split(b"/")
    sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                    signature_algorithm=algorithm.encode(),
                    canonicalize=(h, b), length=length,
                    include_headers=[b"from", b"to", b"subject", b"date"])
    sys.stdout.buffer.write(sig)


def verify(zonefile):
    zone = {}
    with open(zonefile, "rb") as f:
        for line in f:
            name, text = line.rstrip(b"\n").split(b"\t", 1)
            zone[name.lower()] = text

    def dnsfunc(name, timeout=5):
        return zone.get(name.lower().rstrip(b"."))

    msg = sys.stdin.buffer.read()
    d = dkim.DKIM(msg)
    n = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            print("fail", e, file=sys.stderr)
            ok = False
        print("pass" if ok else "fail")


if __name__ == "__main__":
    if sys.argv[1] == "sign":
        sign(*sys.argv[2:7], length=sys.argv[7:8] == ["length"])
    elif sys.argv[1] == "verify":
        verify(sys.argv[2])
    else:
        sys.exit(__doc__)
