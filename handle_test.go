package kez_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"kez.lat/kez"
)

func TestParseHandle(t *testing.T) {
	tests := []struct {
		name, in, domain string
		want             string // qualified form; "" means an error wrapping ErrInvalidHandle
	}{
		{"bare", "alice", "kez.lat", "alice@kez.lat"},
		{"at bare", "@alice", "kez.lat", "alice@kez.lat"},
		{"mixed case", "Alice@KEZ.lat", "kez.lat", "alice@kez.lat"},
		{"qualified", "alice@kez.lat", "kez.lat", "alice@kez.lat"},
		{"at qualified", "@alice@kez.lat", "kez.lat", "alice@kez.lat"},
		{"other domain kept", "bob@other.example", "kez.lat", "bob@other.example"},
		{"other default domain", "bob", "chat.example.org", "bob@chat.example.org"},
		{"upper bare", "ALICE", "kez.lat", "alice@kez.lat"},
		{"digits and underscore", "a_1b2", "kez.lat", "a_1b2@kez.lat"},
		{"min length", "ab", "kez.lat", "ab@kez.lat"},
		{"max length", "a" + strings.Repeat("b", 29), "kez.lat", "a" + strings.Repeat("b", 29) + "@kez.lat"},
		{"surrounding space trimmed", " alice ", "kez.lat", "alice@kez.lat"},
		{"numeric label domain", "alice@127.example", "kez.lat", "alice@127.example"},
		{"hyphen in domain", "alice@my-host.example", "kez.lat", "alice@my-host.example"},

		{"empty", "", "kez.lat", ""},
		{"only at", "@", "kez.lat", ""},
		{"only at at", "@@", "kez.lat", ""},
		{"too short", "a", "kez.lat", ""},
		{"too long", "a" + strings.Repeat("b", 30), "kez.lat", ""},
		{"leading digit", "1alice", "kez.lat", ""},
		{"leading underscore", "_alice", "kez.lat", ""},
		{"dot", "al.ice", "kez.lat", ""},
		{"star", "al*ice", "kez.lat", ""},
		{"gt", "alice>", "kez.lat", ""},
		{"inner space", "al ice", "kez.lat", ""},
		{"tab", "al\tice", "kez.lat", ""},
		{"hyphen", "al-ice", "kez.lat", ""},
		{"nul", "al\x00ice", "kez.lat", ""},
		{"unicode letter", "ålice", "kez.lat", ""},
		{"cyrillic a", "\u0430lice", "kez.lat", ""},
		{"fullwidth", "ａlice", "kez.lat", ""},
		{"kelvin sign folds to k", "\u212Aez_fan", "kez.lat", ""},
		{"dotted capital I", "\u0130nes", "kez.lat", ""},
		{"invalid utf8", "al\xffice", "kez.lat", ""},
		{"two at", "alice@kez@lat", "kez.lat", ""},
		{"two at empty domain", "alice@@kez.lat", "kez.lat", ""},
		{"double leading at", "@@alice", "kez.lat", ""},
		{"empty domain", "alice@", "kez.lat", ""},
		{"empty local", "@kez.lat", "kez.lat", ""},
		{"single label domain", "alice@localhost", "kez.lat", ""},
		{"empty label", "alice@kez..lat", "kez.lat", ""},
		{"trailing dot", "alice@kez.lat.", "kez.lat", ""},
		{"leading dot", "alice@.kez.lat", "kez.lat", ""},
		{"leading hyphen label", "alice@-kez.lat", "kez.lat", ""},
		{"trailing hyphen label", "alice@kez-.lat", "kez.lat", ""},
		{"underscore in domain", "alice@kez_x.lat", "kez.lat", ""},
		{"star domain", "alice@*.lat", "kez.lat", ""},
		{"gt domain", "alice@kez.>", "kez.lat", ""},
		{"port", "alice@kez.lat:443", "kez.lat", ""},
		{"unicode domain", "alice@kéz.lat", "kez.lat", ""},
		{"label too long", "alice@" + strings.Repeat("a", 64) + ".lat", "kez.lat", ""},
		{"domain too long", "alice@" + strings.Repeat(strings.Repeat("a", 63)+".", 4) + "lat", "kez.lat", ""},
		{"bare without default domain", "alice", "", ""},
		{"bare with bad default domain", "alice", "localhost", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := kez.ParseHandle(tt.in, tt.domain)
			if tt.want == "" {
				if !errors.Is(err, kez.ErrInvalidHandle) {
					t.Fatalf("ParseHandle(%q, %q) = %v, %v; want error wrapping ErrInvalidHandle", tt.in, tt.domain, h, err)
				}
				if !h.IsZero() {
					t.Errorf("ParseHandle(%q) returned non-zero handle %v with an error", tt.in, h)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHandle(%q, %q) = %v, want %q", tt.in, tt.domain, err, tt.want)
			}
			if got := h.String(); got != tt.want {
				t.Errorf("ParseHandle(%q, %q) = %q, want %q", tt.in, tt.domain, got, tt.want)
			}
			local, domain, _ := strings.Cut(tt.want, "@")
			if h.Local() != local || h.Domain() != domain {
				t.Errorf("ParseHandle(%q): Local, Domain = %q, %q; want %q, %q", tt.in, h.Local(), h.Domain(), local, domain)
			}
		})
	}
}

func TestParseHandleLengthBoundary(t *testing.T) {
	for n := 0; n <= kez.MaxHandleLen+2; n++ {
		local := strings.Repeat("a", n)
		_, err := kez.ParseHandle(local, kez.DefaultDomain)
		ok := n >= kez.MinHandleLen && n <= kez.MaxHandleLen
		if (err == nil) != ok {
			t.Errorf("ParseHandle(%d letters) error = %v, want ok=%v", n, err, ok)
		}
	}
}

func TestValidateLocal(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"alice", true},
		{"a1", true},
		{"a_", true},
		{"z9_9z", true},
		{"", false},
		{"a", false},
		{"Alice", false}, // ValidateLocal does not fold case
		{"9lives", false},
		{"_a", false},
		{"a.b", false},
		{"a*", false},
		{"a>", false},
		{"a b", false},
		{"a-b", false},
		{"a@b", false},
		{"aé", false},
		{strings.Repeat("a", 30), true},
		{strings.Repeat("a", 31), false},
	}
	for _, tt := range tests {
		err := kez.ValidateLocal(tt.in)
		if tt.ok && err != nil {
			t.Errorf("ValidateLocal(%q) = %v, want nil", tt.in, err)
		}
		if !tt.ok && !errors.Is(err, kez.ErrInvalidHandle) {
			t.Errorf("ValidateLocal(%q) = %v, want ErrInvalidHandle", tt.in, err)
		}
	}
}

func TestValidateDomain(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"kez.lat", true},
		{"a.b", true},
		{"sub.kez.lat", true},
		{"x-1.example", true},
		{"1.2.3.4", true}, // labels of digits are DNS-valid
		{strings.Repeat("a", 63) + ".lat", true},
		{"", false},
		{"kez", false},
		{"KEZ.lat", false}, // ValidateDomain does not fold case
		{"kez..lat", false},
		{".kez.lat", false},
		{"kez.lat.", false},
		{"-kez.lat", false},
		{"kez-.lat", false},
		{"kez_x.lat", false},
		{"kez lat.x", false},
		{"kez.lat:80", false},
		{"k*z.lat", false},
		{"kez.>", false},
		{"kéz.lat", false},
		{strings.Repeat("a", 64) + ".lat", false},
		{strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("a", 61), true},  // 253
		{strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("a", 62), false}, // 254
	}
	for _, tt := range tests {
		err := kez.ValidateDomain(tt.in)
		if tt.ok && err != nil {
			t.Errorf("ValidateDomain(%q) = %v, want nil", tt.in, err)
		}
		if !tt.ok && !errors.Is(err, kez.ErrInvalidHandle) {
			t.Errorf("ValidateDomain(%q) = %v, want ErrInvalidHandle", tt.in, err)
		}
	}
}

func TestSkeleton(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "allce"},
		{"tudisco", "tudlsco"},
		{"tud1sco", "tudlsco"},
		{"tudlsco", "tudlsco"},
		{"bob", "bob"},
		{"b0b", "bob"},
		{"r_n", "m"},
		{"rn", "m"},
		{"barn", "bam"},
		{"vv", "vv"},
		{"w", "vv"},
		{"vvv", "vvv"},
		{"vvvv", "vvvv"},
		{"ww", "vvvv"},
		{"v_v", "vv"},
		{"avw", "avvv"},
		{"avvv", "avvv"},
		{"awv", "avvv"},
		{"rnn", "mn"},
		{"rrn", "rm"},
		{"r00t", "root"},
		{"a_b_c", "abc"},
		{"l1i", "lll"},
		{"x2y3", "x2y3"},
	}
	for _, tt := range tests {
		if got := kez.Skeleton(tt.in); got != tt.want {
			t.Errorf("Skeleton(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}

	same := [][2]string{
		{"tud1sco", "tudisco"},
		{"modern", "modem"},
		{"r_n_x", "mx"},
		{"wave", "vvave"},
		{"o0o", "ooo"},
		{"il1", "lil"},
		{"a_l_i_c_e", "alice"},
		{"avw", "avvv"},
		{"avw", "awv"},
		{"vvvv", "ww"},
		{"vvvv", "vwv"},
		{"w_w", "v_vvv"},
		{"rnn", "mn"},
		{"rrn", "rm"},
	}
	for _, p := range same {
		if a, b := kez.Skeleton(p[0]), kez.Skeleton(p[1]); a != b {
			t.Errorf("Skeleton(%q) = %q, Skeleton(%q) = %q; want equal", p[0], a, p[1], b)
		}
	}
	different := [][2]string{{"alice", "bob"}, {"ab", "ba"}, {"rm", "m"}}
	for _, p := range different {
		if a, b := kez.Skeleton(p[0]), kez.Skeleton(p[1]); a == b {
			t.Errorf("Skeleton(%q) == Skeleton(%q) == %q; want different", p[0], p[1], a)
		}
	}

	h, err := kez.ParseHandle("Tud1_Sco", kez.DefaultDomain)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Skeleton(); got != "tudlsco" {
		t.Errorf("Handle.Skeleton() = %q, want %q", got, "tudlsco")
	}
}

// TestSkeletonReadsAlike checks, for every string of up to 8 letters of
// an alphabet of look-alikes, that two strings share a skeleton exactly
// when they read alike: when spelling each w as vv (each m as rn) makes
// them equal. A fold that contracts pairs left to right fails this for
// odd runs: "avvv" and "avw" read alike.
func TestSkeletonReadsAlike(t *testing.T) {
	for _, tt := range []struct {
		alphabet string
		reading  *strings.Replacer
	}{
		{"vw", strings.NewReplacer("w", "vv")},
		{"rnm", strings.NewReplacer("m", "rn")},
		{"vwrnm", strings.NewReplacer("w", "vv", "m", "rn")},
	} {
		bySkel := map[string]string{}    // skeleton -> a string with it
		byReading := map[string]string{} // reading -> the skeleton of a string read so
		var walk func(string)
		walk = func(s string) {
			if len(s) > 0 {
				local := "a" + s
				skel, reading := kez.Skeleton(local), tt.reading.Replace(local)
				if other, ok := byReading[reading]; ok && other != skel {
					t.Fatalf("%q reads %q but has skeleton %q, another string read so has %q", local, reading, skel, other)
				}
				byReading[reading] = skel
				if other, ok := bySkel[skel]; ok && tt.reading.Replace(other) != reading {
					t.Fatalf("%q and %q share skeleton %q but read %q and %q", local, other, skel, reading, tt.reading.Replace(other))
				}
				bySkel[skel] = local
			}
			if len(s) == 8 || len(tt.alphabet) > 2 && len(s) == 5 {
				return
			}
			for _, c := range tt.alphabet {
				walk(s + string(c))
			}
		}
		walk("")
	}
}

// TestLegacySkeleton: the fold of the releases before w was expanded
// still answers as it did, and differs from Skeleton only for local
// parts with a w or a vv.
func TestLegacySkeleton(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"avw", "avw"}, {"avvv", "awv"}, {"v_v", "w"}, {"vvvv", "ww"}, {"tud1sco", "tudlsco"}, {"barn", "bam"},
	} {
		if got := kez.LegacySkeleton(tt.in); got != tt.want {
			t.Errorf("LegacySkeleton(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, local := range []string{"alice", "av", "vav", "tud1sco", "rnm", "v_a_v"} {
		if a, b := kez.Skeleton(local), kez.LegacySkeleton(local); a != b {
			t.Errorf("Skeleton(%q) = %q, LegacySkeleton = %q; want equal", local, a, b)
		}
	}
}

var skeletonRE = regexp.MustCompile(`^[a-z0-9]+$`)

// TestSkeletonAlphabet checks, for every local part of up to three
// characters, that the skeleton is a non-empty [a-z0-9] token and a fixed
// point (Skeleton(Skeleton(x)) == Skeleton(x)).
func TestSkeletonAlphabet(t *testing.T) {
	const first = "abcdefghijklmnopqrstuvwxyz"
	const rest = first + "0123456789_"
	check := func(local string) {
		s := kez.Skeleton(local)
		if !skeletonRE.MatchString(s) {
			t.Errorf("Skeleton(%q) = %q, want only [a-z0-9]", local, s)
		}
		if again := kez.Skeleton(s); again != s {
			t.Errorf("Skeleton(Skeleton(%q)) = %q, want %q", local, again, s)
		}
	}
	for _, a := range first {
		for _, b := range rest {
			check(string(a) + string(b))
			for _, c := range rest {
				check(string(a) + string(b) + string(c))
			}
		}
	}
}

func TestReservedDefaults(t *testing.T) {
	r := kez.NewReserved(kez.DefaultReserved...)
	for _, local := range []string{
		"admin", "root", "support", "security", "abuse", "postmaster", "help",
		"system", "nats", "kez", "www", "api",
	} {
		if !r.Contains(mustHandle(t, local)) {
			t.Errorf("default reserved set does not contain %q", local)
		}
	}
	for _, local := range []string{"r00t", "ro_ot", "adm1n", "admi_n", "k_e_z", "he1p", "vvvvvv"} { // vvvvvv reads www
		if !r.Contains(mustHandle(t, local)) {
			t.Errorf("Reserved.Contains(%q) = false, want true (skeleton match)", local)
		}
	}
	for _, local := range []string{"alice", "bob", "rooted", "administrators", "kez2"} {
		if r.Contains(mustHandle(t, local)) {
			t.Errorf("default reserved set contains %q", local)
		}
	}
	// The domain plays no part.
	if h, _ := kez.ParseHandle("root@other.example", ""); !r.Contains(h) {
		t.Errorf("Reserved.Contains(root@other.example) = false, want true")
	}
	// NewReserved folds case and space like handle input.
	if !kez.NewReserved(" Operator2 ").Contains(mustHandle(t, "operator2")) {
		t.Errorf("NewReserved(\" Operator2 \") does not contain operator2")
	}
}

func TestReadReserved(t *testing.T) {
	r := kez.NewReserved()
	const file = `# operator reserved names
billing

  Sales  
# trailing comment line
ceo_office
`
	if err := r.ReadReserved(strings.NewReader(file)); err != nil {
		t.Fatalf("ReadReserved = %v", err)
	}
	for _, local := range []string{"billing", "sales", "ceo_office", "ceooffice", "b1lling", "sa1es"} {
		if !r.Contains(mustHandle(t, local)) {
			t.Errorf("after ReadReserved, Contains(%q) = false", local)
		}
	}
	if r.Contains(mustHandle(t, "alice")) {
		t.Errorf("after ReadReserved, Contains(alice) = true")
	}
	// Comments are not entries.
	if len(r) != 3 {
		t.Errorf("ReadReserved added %d entries, want 3", len(r))
	}

	// ReadReserved adds to the existing set.
	r = kez.NewReserved(kez.DefaultReserved...)
	if err := r.ReadReserved(strings.NewReader("billing\n")); err != nil {
		t.Fatal(err)
	}
	if !r.Contains(mustHandle(t, "root")) || !r.Contains(mustHandle(t, "billing")) {
		t.Errorf("ReadReserved replaced the defaults instead of adding")
	}
}

func TestReadReservedBadLine(t *testing.T) {
	tests := []struct {
		name, file, line string
	}{
		{"dot", "ok_name\nbad.name\n", "line 2"},
		{"inline comment", "# c\n\nbilling # finance\n", "line 3"},
		{"too short", "x\n", "line 1"},
		{"leading digit", "good\n\n\n4chan\n", "line 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := kez.NewReserved().ReadReserved(strings.NewReader(tt.file))
			if !errors.Is(err, kez.ErrInvalidHandle) {
				t.Fatalf("ReadReserved(%q) = %v, want ErrInvalidHandle", tt.file, err)
			}
			if !strings.Contains(err.Error(), tt.line) {
				t.Errorf("ReadReserved(%q) = %q, want it to name %q", tt.file, err, tt.line)
			}
		})
	}
}

func TestHandleText(t *testing.T) {
	h := mustHandle(t, "alice")
	b, err := json.Marshal(struct {
		H kez.Handle `json:"h"`
	}{h})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"h":"alice@kez.lat"}`; string(b) != want {
		t.Errorf("json.Marshal = %s, want %s", b, want)
	}
	var back struct {
		H kez.Handle `json:"h"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.H != h {
		t.Errorf("round trip = %v, want %v", back.H, h)
	}

	for _, in := range []string{"Alice@KEZ.LAT", "@alice@kez.lat"} {
		var got kez.Handle
		if err := got.UnmarshalText([]byte(in)); err != nil || got != h {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", in, got, err, h)
		}
	}
	for _, in := range []string{"", "alice", "@alice", "alice@", "al.ice@kez.lat", "alice@kez"} {
		var got kez.Handle
		if err := got.UnmarshalText([]byte(in)); !errors.Is(err, kez.ErrInvalidHandle) {
			t.Errorf("UnmarshalText(%q) = %v, want ErrInvalidHandle", in, err)
		}
		if !got.IsZero() {
			t.Errorf("UnmarshalText(%q) modified the handle to %v", in, got)
		}
	}

	var zero kez.Handle
	if !zero.IsZero() || zero.String() != "" {
		t.Errorf("zero Handle: IsZero = %v, String = %q", zero.IsZero(), zero.String())
	}
	if text, err := zero.MarshalText(); err != nil || len(text) != 0 {
		t.Errorf("zero Handle MarshalText = %q, %v", text, err)
	}
}

func mustHandle(tb testing.TB, s string) kez.Handle {
	tb.Helper()
	h, err := kez.ParseHandle(s, kez.DefaultDomain)
	if err != nil {
		tb.Fatalf("ParseHandle(%q) = %v", s, err)
	}
	return h
}

var localRE = regexp.MustCompile(`^[a-z][a-z0-9_]{1,29}$`)

func FuzzParseHandle(f *testing.F) {
	for _, s := range []string{
		"alice", "@alice", "Alice@KEZ.lat", "alice@kez.lat", "@alice@kez.lat",
		"a", "1a", "_a", "a.b", "a*", "a>", "a b", "ålice", "\u212Aez", "",
		"alice@kez@lat", "alice@", "@", "a@b.c", "r_n_vv_0_1", " bob ",
		"alice@" + strings.Repeat("a", 64) + ".lat",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := kez.ParseHandle(s, kez.DefaultDomain)
		if err != nil {
			if !errors.Is(err, kez.ErrInvalidHandle) {
				t.Fatalf("ParseHandle(%q) = %v, want ErrInvalidHandle", s, err)
			}
			return
		}
		if !localRE.MatchString(h.Local()) {
			t.Fatalf("ParseHandle(%q) local part %q breaks the handle rule", s, h.Local())
		}
		if err := kez.ValidateDomain(h.Domain()); err != nil {
			t.Fatalf("ParseHandle(%q) domain %q: %v", s, h.Domain(), err)
		}
		again, err := kez.ParseHandle(h.String(), "")
		if err != nil || again != h {
			t.Fatalf("ParseHandle(%q) = %v, but its String re-parses to %v, %v", s, h, again, err)
		}
		var fromText kez.Handle
		if err := fromText.UnmarshalText([]byte(h.String())); err != nil || fromText != h {
			t.Fatalf("UnmarshalText(%q) = %v, %v", h.String(), fromText, err)
		}
		if sk := h.Skeleton(); !skeletonRE.MatchString(sk) || len(sk) > 2*kez.MaxHandleLen {
			t.Fatalf("Skeleton of %q = %q, not a safe subject token", h.Local(), sk)
		} else if again := kez.Skeleton(sk); again != sk {
			t.Fatalf("Skeleton(Skeleton(%q)) = %q, want the fixed point %q", h.Local(), again, sk)
		}
	})
}
