// Package buildinfo tells which build of kez a binary is: module
// version, commit, whether the tree was modified, commit time and Go
// version, all read from the build information the go command stamps
// into every binary (runtime/debug), never typed by hand.
package buildinfo
