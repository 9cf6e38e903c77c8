// Package keyfile reads files that hold secrets, such as a kez key file:
// like ssh, it refuses one that anyone but its owner may access.
package keyfile
