// Package keyfile reads and creates files that hold secrets, such as a
// kez key file: like ssh, it refuses one that anyone but its owner may
// access, and it creates one atomically, never over an existing one.
package keyfile
