"""Serving from more than one process: the primary's worker pool and the worker process.

The primary (:class:`gateway.daemon.gateway.Gateway`) keeps the database writer, the admin
listener, systemd, reload and stop (and accepts connections only while no worker is ready);
workers (:mod:`gateway.workers.child`) serve the Z39.50
and NCIP listeners on the primary's own listening sockets, inherited, forward NCIP requests
that write (:mod:`gateway.workers.ncip_routing`) and ship their audit rows and counters to the
primary over a pipe (:mod:`gateway.workers.channel`).
"""
