package natskeys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// KeysConfFile is the file of NATS config variables that nats/nats.conf
// includes from its keys/ folder.
const KeysConfFile = "kez-keys.conf"

// Key names: each is stored as <name>.nk (the nkey seed, mode 0600) in the
// keys folder. Services read their own seed file.
const (
	KeyIssuer     = "issuer"      // account key that signs callout answers and user JWTs
	KeyXKey       = "xkey"        // curve key that callout requests are sealed to
	KeyChatServer = "chat-server" // kez-chat-server's JetStream user (account KEZ)
	KeyCallout    = "callout"     // kez-chat-server's callout responder (account AUTH)
	KeySigServer  = "sig-server"  // kez-sig-server's JetStream user (account KEZ)
	KeyAdmin      = "admin"       // operator's user for the nats CLI (account KEZ)
	KeySys        = "sys"         // operator's system-account user (account SYS)
)

type keySpec struct {
	name    string
	confVar string
	create  func() (nkeys.KeyPair, error)
}

var keySpecs = []keySpec{
	{KeyIssuer, "KEZ_CALLOUT_ISSUER", nkeys.CreateAccount},
	{KeyXKey, "KEZ_CALLOUT_XKEY", nkeys.CreateCurveKeys},
	{KeyChatServer, "KEZ_CHAT_SERVER_NKEY", nkeys.CreateUser},
	{KeyCallout, "KEZ_CALLOUT_NKEY", nkeys.CreateUser},
	{KeySigServer, "KEZ_SIG_SERVER_NKEY", nkeys.CreateUser},
	{KeyAdmin, "KEZ_ADMIN_NKEY", nkeys.CreateUser},
	{KeySys, "KEZ_SYS_NKEY", nkeys.CreateUser},
}

// EnsureKeys makes dir hold every deployment key: it keeps each <name>.nk
// already there, generates the missing ones, and (re)writes kez-keys.conf
// from them. It never overwrites a seed, so running it on every start (as
// the compose init service does) is safe. It returns the config text.
func EnsureKeys(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create keys dir: %w", err)
	}
	var conf bytes.Buffer
	conf.WriteString("# Written by `kez-chat-server keys`: public keys only; the seeds are the .nk files beside it.\n")
	for _, s := range keySpecs {
		path := filepath.Join(dir, s.name+".nk")
		kp, err := ReadSeedFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			kp, err = s.create()
			if err == nil {
				err = writeSeed(path, kp)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", s.name, err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", s.name, err)
		}
		fmt.Fprintf(&conf, "%s: %q\n", s.confVar, pub)
	}
	if err := os.WriteFile(filepath.Join(dir, KeysConfFile), conf.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", KeysConfFile, err)
	}
	return conf.Bytes(), nil
}

func writeSeed(path string, kp nkeys.KeyPair) error {
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(seed, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadSeedFile reads an nkey seed file (the seed on its own line, as nsc and
// the nats CLI write it). It refuses a file that group or others can read.
func ReadSeedFile(path string) (nkeys.KeyPair, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: seed file is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// The seed alone on a line, or a decorated creds-style file. FromSeed
	// also takes curve (xkey) seeds.
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		if kp, err = nkeys.ParseDecoratedNKey(b); err != nil {
			return nil, fmt.Errorf("%s: not an nkey seed file", path)
		}
	}
	return kp, nil
}
