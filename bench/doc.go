// Package bench holds the throughput measurements of `make bench`. Each
// figure is a ratio against a baseline measured in the same run (a bare
// net/http handler, raw JetStream publishes, a raw TCP copy), because the
// machines we run on are shared and noisy. The measurements are tests
// behind the `bench` build tag, so `make test` does not run them.
package bench
