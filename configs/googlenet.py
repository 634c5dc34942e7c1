"""GoogLeNet (Szegedy et al., 2014). Default: the paper's network. Preset: torchvision.

  python -m jaxcnn.main --config configs/googlenet.py
  python -m jaxcnn.main --config configs/googlenet.py:torchvision

Both train with the two auxiliary heads (after inception 4a and 4d), their losses weighted
0.3 as in the paper; `--config.model.aux_heads=False --config.train.aux_loss_weights='()'`
trains without them.

The paper's recipe (section 6): SGD with momentum 0.9 (asynchronous, on many machines) and a
fixed schedule that lowers the lr by 4% every 8 epochs; it gives neither the initial lr, the
batch size, the weight decay nor the number of epochs. We take them from the Caffe
replication (bvlc_googlenet, 68.7% top-1): batch 32, lr 0.01, weight decay 2e-4, and its
quick solver's 60 epochs, here at batch 256 with the lr scaled linearly to 0.08.

Schedule: cosine to zero over the 60 epochs, NOT the paper's step decay. The quick solver
also decays to zero over 60 epochs (poly, power 0.5), which cosine resembles; the paper's
0.96-per-8-epochs decay only lowers the lr to 0.96^7 = 0.75x of its start in 60 epochs (Caffe's
full solver ran 250 epochs for it). It can be reproduced exactly with
`optimizer.schedule='multistep'`, `decay_factor=0.96` and milestones at every 8 epochs,
i.e. (8/E, 16/E, ...) for E epochs.
"""

from jaxcnn.config import base_config, parse_preset

PRESETS = ('default', 'torchvision')


def get_config(arg=None):
  preset = parse_preset(arg, PRESETS)
  config = base_config()
  config.model.name = 'googlenet'
  config.model.variant = 'paper'
  config.model.aux_heads = True
  config.model.dropout_rate = 0.4

  config.data.name = 'imagenet2012'
  config.data.image_size = 224
  # The paper's crops of 8%-100% of the image area and aspect ratios 3/4-4/3, and mirror
  # images; evaluation takes the centre 224 crop of the image at 256.
  config.data.augment = ('random_resized_crop', 'flip')
  config.data.resize_size = 256
  config.train.batch_size = 256
  config.train.num_epochs = 60
  config.train.log_every_steps = 100
  config.train.label_smoothing = 0.0
  config.train.aux_loss_weights = (0.3, 0.3)  # aux1 (after 4a), aux2 (after 4d): the paper's
  config.optimizer.learning_rate = 0.08  # Caffe's 0.01 at batch 32, x 256 / 32
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 2e-4  # Caffe's replication; the paper gives none
  config.optimizer.schedule = 'cosine'  # see the module docstring
  config.checkpoint.every_steps = 5000

  if preset == 'torchvision':
    # torchvision's layout (BN, 3x3 "5x5" branch) and its main-head dropout of 0.2 (its aux
    # heads keep 0.7). torchvision's weights are ported from TensorFlow, not trained by a
    # recipe of its own, so the training recipe stays the one above.
    config.model.variant = 'torchvision'
    config.model.dropout_rate = 0.2
  return config


# Ablations for `python -m jaxcnn.sweep --config configs/googlenet.py[:PRESET] --sweep NAME`.
SWEEPS = {
    'aux_heads': [{'model.aux_heads': True, 'train.aux_loss_weights': (0.3, 0.3)},
                  {'model.aux_heads': False, 'train.aux_loss_weights': ()}],
}
