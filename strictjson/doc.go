// Package strictjson reads JSON that is signed or sealed, where every
// reader must see the same value: one value, UTF-8, no member twice,
// bounded nesting, members matched by exact name, canonical integers and
// base64; and writes the {"payload","sig"} signed wire form.
package strictjson
