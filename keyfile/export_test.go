package keyfile

// SetLink replaces the hard-link call of Create until the returned func
// restores it.
func SetLink(f func(oldname, newname string) error) (restore func()) {
	old := link
	link = f
	return func() { link = old }
}
