"""The virtual NFP NIC: control messages, NIC-side map tables, netdevs and the NIC daemon."""
