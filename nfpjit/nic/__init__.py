"""The virtual NFP NIC: control messages, NIC-side map tables, netdevs and the NIC daemon.

- :mod:`nfpjit.nic.cmsg`: the control-message wire format (docs/offload.md).
- :mod:`nfpjit.nic.tables`: the NIC's map tables (kernel map semantics).
- :mod:`nfpjit.nic.mapclient`: the host side of the map operations, with the driver's reply cache.
- :mod:`nfpjit.nic.errors`: :class:`~nfpjit.nic.errors.OffloadError` (an errno and a better message).
- :mod:`nfpjit.nic.netdev`: the TAP, the veth wire and the namespace, through pyroute2.
- :mod:`nfpjit.nic.registry`: the state directories under ``/run/nfpjit/nic``.
- :mod:`nfpjit.nic.daemon`: the NIC daemon (frames through the simulator, the control socket) and
  :class:`~nfpjit.nic.daemon.ControlClient`, the host end of its socket.

The user API is :mod:`nfpjit.offload.device` (``nfpjit.offload.Device``).
"""
