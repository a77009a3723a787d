"""The federation over Flower (``federation.transport: flower``): real processes, real messages.

The in-process loop (:class:`llmqfl.federated.server.Federation`) stays the one implementation of
selection, guidance, aggregation, evaluation and termination. Here its client side is replaced by
Flower messages: the ServerApp (:mod:`.server_app`) runs that same loop and sends each selected
client a ``train`` message; every client is a ClientApp (:mod:`.client_app`) on its own SuperNode
that loads only its own site bundle (:mod:`.bundles`). Launchers: :mod:`.deployment` (SuperLink +
one SuperNode per client, gRPC/HTTP on localhost or across sites) and :mod:`.simulation`
(Flower's simulation engine for many clients). Guide: ``docs/federation.md``.
"""
