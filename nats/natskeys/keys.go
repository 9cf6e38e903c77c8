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
	if err := keyfile.Replace(filepath.Join(dir, KeysConfFile), conf.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", KeysConfFile, err)
	}
	return conf.Bytes(), nil
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
