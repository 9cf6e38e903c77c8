#!/usr/bin/env python3
# An independent implementation of kez-msg-v2 and kez-msg-v1 sealing
# (docs/kez-msg-v2.md, docs/kez-msg-v1.md) with the Python "cryptography"
# package, checked byte for byte against every valid vector:
#   python3 message/testdata/check_vectors.py message/testdata/vectors.json
# Ed25519 and X25519 come from the package; the Edwards to Montgomery map
# of the public key and the clamping of the scalar are done here by hand.
import base64, hashlib, json, sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

P = 2**255 - 19
RAW = (Encoding.Raw, PublicFormat.Raw)


def montgomery(ed_pub):  # u = (1 + y) / (1 - y) mod p
    y = int.from_bytes(ed_pub, "little") & ((1 << 255) - 1)
    return ((1 + y) * pow(1 - y, P - 2, P) % P).to_bytes(32, "little")


def scalar(seed):  # SHA-512(seed)[0:32], clamped
    s = bytearray(hashlib.sha512(seed).digest()[:32])
    s[0] &= 248
    s[31] &= 127
    s[31] |= 64
    return bytes(s)


def x25519(s, u):
    return X25519PrivateKey.from_private_bytes(s).exchange(X25519PublicKey.from_public_bytes(u))


def b64(b):
    return base64.b64encode(b).decode()


def seal(v):
    """Everything the vector records, recomputed from seeds and inputs."""
    out = {}
    ss, rs = bytes.fromhex(v["sender_seed"]), bytes.fromhex(v["recipient_seed"])
    sk = Ed25519PrivateKey.from_private_bytes(ss)
    spub = sk.public_key().public_bytes(*RAW)
    rpub = Ed25519PrivateKey.from_private_bytes(rs).public_key().public_bytes(*RAW)
    out["sender"], out["recipient"] = "ed25519:" + spub.hex(), "ed25519:" + rpub.hex()
    out["sender_x25519"], out["recipient_x25519"] = montgomery(spub).hex(), montgomery(rpub).hex()
    out["sender_scalar"] = scalar(ss).hex()
    shared = x25519(scalar(ss), montgomery(rpub))
    if shared != x25519(scalar(rs), montgomery(spub)):
        raise ValueError("the two sides' shared secrets differ")
    out["shared"] = shared.hex()

    version, ts, pt = v["v"], v["ts"], v["plaintext"].encode()
    ident, salt = base64.b64decode(v["id"], validate=True), base64.b64decode(v["salt"], validate=True)
    label = b"kez-msg-v%d" % version
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=label + spub + rpub).derive(shared)
    out["key"] = key.hex()
    if version == 1:
        header = b"\n".join([label, v["id"].encode(), out["sender"].encode(), out["recipient"].encode(), str(ts).encode()])
        out["header"] = header.decode()
        ct = ChaCha20Poly1305(key).encrypt(bytes(12), pt, header)
        signed = b"kez-msg-v1-sig\x00" + header + salt + ct
    elif version == 2:
        fixed = ident + spub + rpub + ts.to_bytes(8, "big")
        ad = label + b"\x00" + fixed
        kc = hashlib.sha256(b"kez-msg-v2-kc\x00" + key).digest()
        ct = ChaCha20Poly1305(key).encrypt(bytes(12), pt, ad)
        transcript = fixed + salt + kc + ct
        out["ad"], out["kc"], out["transcript"] = ad.hex(), kc.hex(), transcript.hex()
        signed = b"kez-msg-v2-sig\x00" + transcript
    else:
        raise ValueError("unknown version %r" % version)
    sig = sk.sign(signed)
    Ed25519PublicKey.from_public_bytes(spub).verify(sig, signed)  # raises if not
    members = [("v", str(version)), ("id", '"%s"' % v["id"]), ("from", '"%s"' % out["sender"]),
               ("to", '"%s"' % out["recipient"]), ("ts", str(ts)), ("salt", '"%s"' % v["salt"])]
    if version == 2:
        members.append(("kc", '"%s"' % b64(kc)))
    members += [("ct", '"%s"' % b64(ct)), ("sig", '"%s"' % b64(sig))]
    out["envelope"] = "{" + ",".join('"%s":%s' % m for m in members) + "}"
    out["dedup_key"] = spub.hex() + "-" + ident.hex()
    # The recipient's side: its key decrypts the envelope's ct to pt.
    rkey = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=label + spub + rpub).derive(
        x25519(scalar(rs), montgomery(spub)))
    if ChaCha20Poly1305(rkey).decrypt(bytes(12), ct, header if version == 1 else ad) != pt:
        raise ValueError("the recipient does not decrypt the plaintext")
    return out


ok, n = True, {1: 0, 2: 0}
for v in json.load(open(sys.argv[1]))["valid"]:
    try:
        got = seal(v)
        bad = [k for k in got if got[k] != v.get(k)]
    except Exception as e:  # a vector that cannot be recomputed is a mismatch
        bad = ["error: %s" % e]
    ok &= not bad
    n[v["v"]] += 1
    print("v%d %-36s %s" % (v["v"], v["description"], "MISMATCH " + ", ".join(bad) if bad else "ok"))
print("checked %d v2 and %d v1 valid vectors" % (n[2], n[1]))
sys.exit(0 if ok else 1)
