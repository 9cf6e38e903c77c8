package chatcmd

import (
	"context"
	"fmt"

	"kez.lat/kez/client"
	"kez.lat/kez/cmd/kez-chat/display"
)

type doctorCmd struct {
	Downloads string `default:"." type:"path" help:"The folder fetch saves to, whose free space is checked."`
	MinFree   int64  `name:"min-free" default:"1073741824" help:"Free bytes the download folder needs (default 1 GiB)."`
}

// doctorFailed is the error of a doctor run with failed checks (exit 1),
// after the report.
type doctorFailed struct{ failed, total int }

func (e doctorFailed) Error() string {
	return fmt.Sprintf("%d of %d checks failed: see the fix under each", e.failed, e.total)
}

// Run checks each hop in order and prints one line per check, with its
// fix below one that fails or warns; with --json, one object at the end.
func (d *doctorCmd) Run(ctx context.Context) error {
	return withClient(ctx, func(a *app, c *client.Client) error {
		opts := client.DoctorOptions{DownloadDir: d.Downloads, MinFree: d.MinFree}
		var report func(client.Check)
		if !a.g.JSON {
			report = func(ch client.Check) {
				// Details carry what servers and certificates say: inert.
				fmt.Fprintf(a.out, "%-5s %-13s %s\n", statusWord(ch.Status), ch.Name, display.Line(ch.Detail))
				if ch.Fix != "" && (ch.Status == client.CheckFail || ch.Status == client.CheckWarn) {
					fmt.Fprintf(a.out, "%-19s fix: %s\n", "", display.Line(ch.Fix))
				}
			}
		}
		checks := c.Doctor(ctx, opts, report)
		failed := 0
		for _, ch := range checks {
			if ch.Status == client.CheckFail {
				failed++
			}
		}
		if a.g.JSON {
			if err := writeJSON(a.out, struct {
				OK     bool           `json:"ok"`
				Checks []client.Check `json:"checks"`
			}{failed == 0, checks}); err != nil {
				return err
			}
		}
		if failed > 0 {
			return doctorFailed{failed, len(checks)}
		}
		return nil
	})
}

func statusWord(s client.CheckStatus) string {
	switch s {
	case client.CheckFail:
		return "FAIL"
	case client.CheckWarn:
		return "warn"
	case client.CheckSkip:
		return "-"
	}
	return "ok"
}
