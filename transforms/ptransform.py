"""PTransform and ptransform_fn at Beam's path ``apache_beam.transforms.ptransform``.

>>> import tidal as td
>>> from tidal.transforms.ptransform import PTransform
>>> class Double(PTransform):
...     def expand(self, pcoll):
...         return pcoll | td.Map(lambda x: 2 * x)
>>> with td.Pipeline() as p:
...     td.testing.assert_that(p | td.Create([1, 2]) | Double(), td.testing.equal_to([2, 4]))
"""

from tidal.model.ptransform import PTransform, label_from_callable, ptransform_fn

__all__ = ["PTransform", "label_from_callable", "ptransform_fn"]
