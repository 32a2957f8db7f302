"""Building blocks of the rating network; the LightningModule (``regressor``) wraps them."""

from movrec.models.components.head import mlp_head
from movrec.models.components.movie import MovieEncoder
from movrec.models.components.net import RatingNet
from movrec.models.components.ranking import RankingTower
from movrec.models.components.title import PADDING_INDEX, TitleEncoder
from movrec.models.components.users import UserTower

__all__ = [
    "PADDING_INDEX",
    "MovieEncoder",
    "RankingTower",
    "RatingNet",
    "TitleEncoder",
    "UserTower",
    "mlp_head",
]
