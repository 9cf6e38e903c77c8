package chatcmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/posener/complete"
	"github.com/willabides/kongplete"

	"kez.lat/kez/client"
	"kez.lat/kez/cmd/cli"
	"kez.lat/kez/cmd/kez-chat/display"
)

// Shell completion: the shell runs kez-chat itself with the command line
// in COMP_LINE (bash's `complete -C`; zsh through bashcompinit; fish
// through a function that sets it), and kongplete answers from the kong
// model: commands, flags, enum values, and the predictors named in the
// `predictor` tags of the grammar (contact, profile, file).

// completing reports whether the process was started by a shell's
// completion.
func completing() bool { return os.Getenv("COMP_LINE") != "" }

// completeLine prints the candidates for the command line in COMP_LINE.
func completeLine(stdout io.Writer) int {
	p, err := cli.NewParser(&grammar{}, "kez-chat", "", stdout, io.Discard)
	if err != nil {
		return ExitError
	}
	code := ExitOK
	kongplete.Complete(p,
		kongplete.WithPredictor("contact", complete.PredictFunc(predictContacts)),
		kongplete.WithPredictor("profile", complete.PredictFunc(predictProfiles)),
		kongplete.WithPredictor("file", complete.PredictFiles("*")),
		kongplete.WithErrorHandler(func(error) {}),
		kongplete.WithExitFunc(func(c int) { code = c }),
	)
	return code
}

// profileArg returns the profile the command line names (-p, --profile),
// else $KEZ_CHAT_PROFILE, else the default one.
func profileArg(args []string) string {
	name := os.Getenv("KEZ_CHAT_PROFILE")
	for i, a := range args {
		switch {
		case (a == "-p" || a == "--profile") && i+1 < len(args):
			name = args[i+1]
		case strings.HasPrefix(a, "--profile="):
			name = strings.TrimPrefix(a, "--profile=")
		}
	}
	return name
}

// predictContacts returns the handles of the pinned contacts of the
// profile the command line names, as the UI shows them (@bob at home,
// @bob@other.example elsewhere); without the @ when the word typed so far
// has none. It never creates a profile.
func predictContacts(a complete.Args) []string {
	dir, err := client.ProfileDir(profileArg(a.Completed))
	if err != nil {
		return nil
	}
	p := &client.Profile{Dir: dir}
	cs, err := p.Contacts()
	if err != nil {
		return nil
	}
	home := ""
	if acc, err := p.Account(); err == nil {
		home = acc.Handle.Domain()
	}
	var out []string
	for _, c := range cs {
		h := display.Handle(home, c.Handle)
		if a.Last != "" && !strings.HasPrefix(a.Last, "@") {
			h = strings.TrimPrefix(h, "@")
		}
		out = append(out, h)
	}
	return out
}

// predictProfiles returns the names of the profiles under the user's
// config directory.
func predictProfiles(complete.Args) []string {
	dir, err := client.ProfileDir(client.DefaultProfile)
	if err != nil {
		return nil
	}
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"The shell: bash, zsh or fish."`
}

// Run prints the script that makes the shell complete kez-chat's
// commands, flags, profiles and contacts by asking this binary.
func (c *completionCmd) Run(ctx context.Context) error {
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("where is this binary? %w", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	_, err = io.WriteString(appFrom(ctx).out, completionScript(c.Shell, bin))
	return err
}

// completionScript is the hook of shell for the kez-chat binary at bin.
func completionScript(shell, bin string) string {
	q := "'" + strings.ReplaceAll(bin, "'", `'\''`) + "'"
	switch shell {
	case "bash":
		return "# kez-chat completion for bash: source it, e.g. from ~/.bashrc\n" +
			"complete -o default -C " + q + " kez-chat\n"
	case "zsh":
		return "# kez-chat completion for zsh: source it, e.g. from ~/.zshrc\n" +
			"(( $+functions[compdef] )) || { autoload -U +X compinit && compinit }\n" +
			"autoload -U +X bashcompinit && bashcompinit\n" +
			"complete -o default -C " + q + " kez-chat\n"
	case "fish":
		return "# kez-chat completion for fish: kez-chat completion fish > ~/.config/fish/completions/kez-chat.fish\n" +
			"function __complete_kez_chat\n" +
			"    set -lx COMP_LINE (commandline -cp)\n" +
			"    test -z (commandline -ct)\n" +
			"    and set COMP_LINE \"$COMP_LINE \"\n" +
			"    " + q + "\n" +
			"end\n" +
			"complete -c kez-chat -f -a '(__complete_kez_chat)'\n"
	}
	return ""
}
