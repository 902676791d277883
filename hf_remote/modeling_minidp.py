"""minidp's mean-pooling sequence classifier, as a transformers model.

minidp's save_pretrained writes this file beside the weights of a model trained with pooling "mean", and
points config.json's ``auto_map`` here, so that

    model = AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)

computes minidp's logits. Without ``trust_remote_code=True`` transformers refuses to load DIR (its
``model_type``, "minidp_mean_pooling_bert" / "minidp_mean_pooling_roberta", is no class of its own), where a
plain BertForSequenceClassification / RobertaForSequenceClassification would read position 0 ([CLS], <s>)
and be a different model without saying so.

What differs from those classes is only what the head reads, the mean of the real tokens' last hidden states
(sentence-transformers' mean pooling):

    h = encoder(input_ids, attention_mask).last_hidden_state     # (B, T, C)
    m = attention_mask[..., None]                                # (B, T, 1)
    z = (h * m).sum(1) / m.sum(1).clamp(min=1)                   # (B, C)
    BERT:    logits = classifier(dropout(tanh(bert.pooler.dense(z))))
    RoBERTa: logits = classifier.out_proj(dropout(tanh(classifier.dense(dropout(z)))))

The parameters keep transformers' names (bert.*, roberta.*, classifier.*), so the weights file is the one the
plain classes read. This file is data written by minidp (minidp itself imports neither torch nor transformers).
"""
import torch
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel, RobertaConfig, RobertaModel
from transformers import RobertaPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.roberta.modeling_roberta import RobertaClassificationHead


class MeanPoolingBertConfig(BertConfig):
    model_type = "minidp_mean_pooling_bert"


class MeanPoolingRobertaConfig(RobertaConfig):
    model_type = "minidp_mean_pooling_roberta"


def masked_mean(hidden, attention_mask):
    """(B, T, C), (B, T) -> (B, C): the mean over the real tokens (mask 1), as minidp.nn.pooling."""
    m = attention_mask[..., None].to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def output(logits, labels, num_labels):
    """logits (B, K) and, with labels (B,), the mean cross-entropy."""
    loss = None
    if labels is not None:
        loss = nn.functional.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return SequenceClassifierOutput(loss=loss, logits=logits)


class MeanPoolingBertForSequenceClassification(BertPreTrainedModel):
    config_class = MeanPoolingBertConfig

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=True)  # bert.pooler.dense: the head's first layer
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        pooled = torch.tanh(self.bert.pooler.dense(masked_mean(hidden, attention_mask)))  # (B, C)
        return output(self.classifier(self.dropout(pooled)), labels, self.num_labels)


class MeanPoolingRobertaForSequenceClassification(RobertaPreTrainedModel):
    config_class = MeanPoolingRobertaConfig

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(config)  # dropout, dense, tanh, dropout, out_proj
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.roberta(input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        z = masked_mean(hidden, attention_mask)  # (B, C)
        logits = self.classifier(z[:, None, :])  # the head reads position 0: here z, the only position
        return output(logits, labels, self.num_labels)
