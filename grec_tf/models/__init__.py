"""The multi-task ranking model and its parts; :func:`build_ranker` builds one from an experiment's config.

- :class:`MultiTaskRanker` (a ``tfrs.models.Model``): encoders -> token stack -> bottom -> towers.
- Encoders: :class:`FeatureGroupEncoder` (context / item, wide & deep), :class:`SequenceEncoder`,
  :class:`TaskSentenceEmbedding` (the task token and route ids).
- Bottoms: :class:`SparseMoEBottom` (GRec), :class:`MMoEBottom`, :class:`PLEBottom`, :class:`SharedBottom`;
  towers: :class:`MultiTaskTowers`, :class:`ESMMTowers` (pCTCVR = pCTR x pCVR), :class:`AITMTowers`.
- :class:`SingleTaskRanker`: the single-task baseline, one independent network per task sentence.
"""
from grec_tf.models.aitm_towers import AITMTowers, InformationTransfer
from grec_tf.models.bottoms import MMoEBottom, SharedBottom, SparseMoEBottom
from grec_tf.models.esmm_towers import ESMMTowers, product_logit
from grec_tf.models.factory import build_bottom, build_ranker, build_router
from grec_tf.models.feature_group_encoder import FeatureGroupEncoder
from grec_tf.models.flow_task_embedding import FlowTaskEmbedding
from grec_tf.models.multi_task_ranker import MultiTaskRanker
from grec_tf.models.multi_task_towers import MultiTaskTowers
from grec_tf.models.ple import CustomizedGateControl, PLEBottom
from grec_tf.models.sequence_encoder import SequenceEncoder
from grec_tf.models.single_task_ranker import SingleTaskRanker, TaskSentenceNetworks
from grec_tf.models.task_sentence_embedding import TaskSentenceEmbedding

__all__ = ["MMoEBottom", "SharedBottom", "SparseMoEBottom", "PLEBottom", "CustomizedGateControl", "ESMMTowers",
           "product_logit", "AITMTowers", "InformationTransfer", "FlowTaskEmbedding", "SingleTaskRanker",
           "TaskSentenceNetworks", "build_bottom", "build_ranker", "build_router", "FeatureGroupEncoder",
           "MultiTaskRanker", "MultiTaskTowers", "SequenceEncoder", "TaskSentenceEmbedding"]
