package kez_test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"kez.lat/kez"
)

// TestErrorCodesDocumented: docs/protocol.md's table of error codes says,
// for every code of kez.ErrorCodes, the status the servers answer it
// with, so the documented table cannot drift from the one in the code.
func TestErrorCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	// Rows are "| 409 | `handle_taken` / `key_taken` / `too_similar` | when |".
	row := regexp.MustCompile("(?m)^\\| (\\d{3}) \\| ((?:`[a-z_]+`(?: / )?)+) \\|")
	documented := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		status, _ := strconv.Atoi(m[1])
		for _, code := range strings.Split(m[2], " / ") {
			documented[strings.Trim(code, "`")] = status
		}
	}
	for _, c := range kez.ErrorCodes() {
		if got, ok := documented[c.Code]; !ok || got != c.Status {
			t.Errorf("docs/protocol.md: code %s documented with status %d, the servers answer %d", c.Code, got, c.Status)
		}
	}
}
