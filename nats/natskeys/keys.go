package natskeys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"

	"kez.lat/kez/keyfile"
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

// The seeds each server reads, and no other: [Install] gives a server's
// own folder these. The operator's (admin, sys) stay in the keys folder,
// and nats-server needs none (only kez-keys.conf, public keys).
var (
	ChatServerKeys = []string{KeyIssuer, KeyXKey, KeyChatServer, KeyCallout}
	SigServerKeys  = []string{KeySigServer}
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
// the compose init service does) is safe. Seeds are written atomically
// ([keyfile.Create]) and kez-keys.conf is replaced atomically, so a power
// cut during the first run leaves no empty or partial file that blocks the
// next; an empty seed file (what earlier releases could leave) counts as
// missing. It returns the config text.
func EnsureKeys(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create keys dir: %w", err)
	}
	var conf bytes.Buffer
	conf.WriteString("# Written by `kez-chat-server keys`: public keys only; the seeds are the .nk files beside it.\n")
	for _, s := range keySpecs {
		path := filepath.Join(dir, s.name+".nk")
		kp, err := ReadSeedFile(path)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errEmptySeed) {
			kp, err = s.create()
			if err == nil {
				err = writeSeed(path, kp)
			}
			if errors.Is(err, fs.ErrExist) { // another run made it first
				kp, err = ReadSeedFile(path)
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
	if err := WriteConf(dir, conf.Bytes()); err != nil {
		return nil, err
	}
	return conf.Bytes(), nil
}

// WriteConf writes conf (what [EnsureKeys] returns: public keys only) as
// kez-keys.conf into dir, replacing it atomically, mode 0644. A folder
// that holds only this file is all nats-server needs.
func WriteConf(dir string, conf []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := keyfile.Replace(filepath.Join(dir, KeysConfFile), conf, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", KeysConfFile, err)
	}
	return nil
}

// Install copies the seeds names from the keys folder dir (which
// [EnsureKeys] filled) into dst, a folder that one service alone reads,
// so that no service holds a seed it does not use (a compromised
// kez-sig-server would otherwise hold the admin seed, or the callout
// issuer's). A seed already in dst is kept when it holds the same key and
// is an error when it holds another: Install never overwrites a seed, and
// a service is never left with a key the broker's kez-keys.conf does not
// name without a word.
func Install(dir, dst string, names ...string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	for _, name := range names {
		kp, err := ReadSeedFile(filepath.Join(dir, name+".nk"))
		if err != nil {
			return fmt.Errorf("key %s: %w", name, err)
		}
		path := filepath.Join(dst, name+".nk")
		err = writeSeed(path, kp)
		if errors.Is(err, fs.ErrExist) {
			err = sameKey(path, kp)
		}
		if err != nil {
			return fmt.Errorf("key %s: %w", name, err)
		}
	}
	return nil
}

// sameKey checks that the seed file path holds kp's key.
func sameKey(path string, kp nkeys.KeyPair) error {
	have, err := ReadSeedFile(path)
	if err != nil {
		return err
	}
	want, err := kp.PublicKey()
	if err != nil {
		return err
	}
	if got, err := have.PublicKey(); err != nil || got != want {
		return fmt.Errorf("%s holds another key than the keys folder (%s); it is not overwritten: remove it to install the folder's", path, want)
	}
	return nil
}

// writeSeed writes kp's seed to the new file path: see [keyfile.Create].
func writeSeed(path string, kp nkeys.KeyPair) error {
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	// A copy: Seed returns the key pair's own slice, which must stay.
	data := append(append(make([]byte, 0, len(seed)+1), seed...), '\n')
	defer clear(data)
	return keyfile.Create(path, data)
}

// errEmptySeed: a seed file without content, which holds no key to keep.
var errEmptySeed = errors.New("empty seed file")

// ReadSeedFile reads an nkey seed file (the seed on its own line, as nsc and
// the nats CLI write it). It refuses a file that group or others can read,
// and one that is not a regular file (see [keyfile.Read]).
func ReadSeedFile(path string) (nkeys.KeyPair, error) {
	// keyfile.Read: the mode checked on the open file, and a FIFO refused
	// rather than waited on.
	b, err := keyfile.Read(path, 64<<10) // a creds file holds a JWT too
	defer clear(b)
	var me *keyfile.ModeError
	switch {
	case errors.As(err, &me):
		return nil, fmt.Errorf("%s: seed file is readable by others (mode %v); chmod 600 it", path, me.Mode)
	case err != nil:
		return nil, err
	case len(b) == 0:
		return nil, fmt.Errorf("%s: %w", path, errEmptySeed)
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
