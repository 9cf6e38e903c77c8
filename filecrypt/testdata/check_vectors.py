#!/usr/bin/env python3
# An independent implementation of kez-file-v1 encryption (docs/kez-file-v1.md)
# with the Python "cryptography" package, checked against vectors.json:
#   python3 filecrypt/testdata/check_vectors.py filecrypt/testdata/vectors.json
import hashlib, json, sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CHUNK = 65536
ok = True
for v in json.load(open(sys.argv[1])):
    key, salt, n = bytes.fromhex(v["key"]), bytes.fromhex(v["salt"]), v["size"]
    pt = bytes(i % 251 for i in range(n))
    pk = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"kez-file-v1 payload").derive(key)
    aead = ChaCha20Poly1305(pk)
    out = b"kez-file-v1\n" + salt
    chunks = [pt[i:i + CHUNK] for i in range(0, n, CHUNK)] or [b""]
    for i, c in enumerate(chunks):
        nonce = i.to_bytes(11, "big") + (b"\x01" if i == len(chunks) - 1 else b"\x00")
        out += aead.encrypt(nonce, c, None)
    good = hashlib.sha256(out).hexdigest() == v["stream_sha256"]
    ok &= good
    print(n, "ok" if good else "MISMATCH")
sys.exit(0 if ok else 1)
