// Package natskeys generates and reads the nkeys of every NATS service
// user of a deployment (the callout issuer and xkey, the servers', the
// operator's) and writes the kez-keys.conf that nats/nats.conf includes.
package natskeys
