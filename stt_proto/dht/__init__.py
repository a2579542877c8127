"""The Kademlia DHT over STT sessions (issue 14), sans-I/O."""
