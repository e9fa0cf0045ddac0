"""Routing strategies of :class:`~grec_tf.layers.SparseMoE`, one registered router class per file.

``ROUTERS`` maps each routing name to its class; a new strategy is one new file whose class is decorated with
``@register_router("name")``, plus its import below. :class:`FrozenRouteRouter` is not a strategy to train
(so not in ``ROUTERS``): it holds the constant routes of a trained task-id router in an exported sub-model.
"""
from grec_tf.layers.routers.base import ROUTERS, Router, make_router, register_router
from grec_tf.layers.routers.task_id_router import TaskIdRouter
# Import order is registration order, the order of ROUTERS (and of the benchmark's report).
from grec_tf.layers.routers.token_router import TokenRouter  # isort: skip
from grec_tf.layers.routers.sentence_router import SentenceRouter  # isort: skip
from grec_tf.layers.routers.task_router import TaskRouter  # isort: skip
from grec_tf.layers.routers.task_sentence_router import TaskSentenceRouter  # isort: skip
from grec_tf.layers.routers.frozen_route_router import FrozenRouteRouter, frozen_routes  # isort: skip

__all__ = ["ROUTERS", "Router", "make_router", "register_router", "TokenRouter", "SentenceRouter", "TaskIdRouter",
           "TaskRouter", "TaskSentenceRouter", "FrozenRouteRouter", "frozen_routes"]
