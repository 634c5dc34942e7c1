"""Inception v3 (Szegedy et al., 2015) in torchvision's layout, 299x299 ImageNet.

  python -m jaxcnn.main --config configs/inception_v3.py

The paper's recipe (section 8): 100 epochs, batch 32 on each of 50 asynchronous replicas,
RMSProp (decay 0.9, eps 1.0), lr 0.045 times 0.94 every 2 epochs, gradient clipping at 2.0,
label smoothing 0.1 (section 7), the auxiliary head on the 17x17 grid. jaxcnn has only SGD:
we use SGD with momentum 0.9, which the paper's "earlier experiments" used, at its lr 0.045
with a synchronous batch of 256, and no clipping. torchvision has no recipe to follow here: its
Inception v3 weights are ported from TensorFlow.

Schedule: cosine to zero over the 100 epochs, NOT the paper's step decay (which ends at
0.94^49 = 0.05x of the start). `optimizer.schedule='multistep'` with `decay_factor=0.94` and
milestones (0.02, 0.04, ..., 0.98) reproduces it exactly.

The aux loss weight 0.4 is TF-slim's (Google's own Inception v3 training code, also used in
PyTorch's fine-tuning tutorial); the paper does not state one. Weight decay 4e-5 is TF-slim's
inception_v3 default; the paper gives none. Label smoothing applies to both heads' losses.
`--config.model.aux_head=False --config.train.aux_loss_weights='()'` trains without the head
(and then accepts inputs down to 75x75 instead of 299x299).
"""

from jaxcnn.config import base_config, parse_preset

PRESETS = ('default',)


def get_config(arg=None):
  parse_preset(arg, PRESETS)
  config = base_config()
  config.model.name = 'inception_v3'
  config.model.aux_head = True
  config.model.dropout_rate = 0.5

  config.data.name = 'imagenet2012'
  config.data.image_size = 299
  config.data.augment = ('random_resized_crop', 'flip')  # GoogLeNet's crops
  config.data.resize_size = 342  # evaluation: the centre 299 crop of the image at 342
  config.train.batch_size = 256
  config.train.num_epochs = 100
  config.train.log_every_steps = 100
  config.train.label_smoothing = 0.1
  config.train.aux_loss_weights = (0.4,)
  config.optimizer.learning_rate = 0.045
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 4e-5
  config.optimizer.schedule = 'cosine'  # see the module docstring
  config.checkpoint.every_steps = 5000
  return config
