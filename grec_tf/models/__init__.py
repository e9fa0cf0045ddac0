"""The multi-task ranking model and its parts; :func:`build_ranker` builds one from an experiment's config.

- :class:`MultiTaskRanker` (a ``tfrs.models.Model``): encoders -> token stack -> bottom -> towers.
- Encoders: :class:`FeatureGroupEncoder` (context / item, wide & deep), :class:`SequenceEncoder`,
  :class:`TaskSentenceEmbedding` (the task token and route ids).
- Bottoms: :class:`SparseMoEBottom` (GRec), :class:`MMoEBottom`, :class:`SharedBottom`; towers:
  :class:`MultiTaskTowers`.
"""
from grec_tf.models.bottoms import MMoEBottom, SharedBottom, SparseMoEBottom
from grec_tf.models.factory import build_bottom, build_ranker, build_router
from grec_tf.models.feature_group_encoder import FeatureGroupEncoder
from grec_tf.models.multi_task_ranker import MultiTaskRanker
from grec_tf.models.multi_task_towers import MultiTaskTowers
from grec_tf.models.sequence_encoder import SequenceEncoder
from grec_tf.models.task_sentence_embedding import TaskSentenceEmbedding

__all__ = ["MMoEBottom", "SharedBottom", "SparseMoEBottom", "build_bottom", "build_ranker", "build_router",
           "FeatureGroupEncoder", "MultiTaskRanker", "MultiTaskTowers", "SequenceEncoder", "TaskSentenceEmbedding"]
