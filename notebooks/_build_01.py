"""Writes notebooks/01_attach_hooks.ipynb (outputs stripped). Run: python notebooks/_build_01.py"""

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# 01 · Attach a concept lens to a TransformerLens model\n\n"
        "Load all-MiniLM-L6-v2 with TransformerLens, stream its residual stream through "
        "concept directions (keeping scores, never residuals), learn linear-separator "
        "concepts on the shipped `wordnet-supersenses` dataset, calibrate SuperActivator "
        "thresholds and look at the tokens that carry the concept.\n\n"
        "To keep this notebook quick on a CPU it uses a slice of the dataset; "
        "`superact run` does the full job."
    ),
    nbf.v4.new_code_cell(
        "import torch\n"
        "from IPython.display import HTML, display\n"
        "from transformer_lens.model_bridge import TransformerBridge\n\n"
        "from superact_lens import ConceptLens, load_dataset, token_masks\n"
        "from superact_lens.adapters.loading import minilm_folder\n"
        "from superact_lens.analysis import activation_distributions\n"
        "from superact_lens.concepts import LinearSeparatorConcepts\n"
        "from superact_lens.detection import AggregatorDetector, SuperActivatorDetector, detection_metrics\n"
        "from superact_lens.plots import plot_distributions, token_heatmap_html\n"
        "from superact_lens.sinks import NormStatsSink, TokenCollector\n\n"
        "torch.manual_seed(0)\n"
        "N_TRAIN, N_CAL, N_TEST = 400, 250, 250  # a slice, for speed"
    ),
    nbf.v4.new_markdown_cell("## The model, loaded with TransformerLens, and the lens on it"),
    nbf.v4.new_code_cell(
        "bridge = TransformerBridge.boot_transformers(str(minilm_folder()), device='cpu')\n"
        "lens = ConceptLens(bridge)\n"
        "print(type(bridge).__name__, '| residual layers:', lens.n_layers, '| d_model:', lens.d_model)\n"
        "print('percent grid 0,25,50,75,100 ->', lens.resolve_layers(['0%', '25%', '50%', '75%', '100%']))"
    ),
    nbf.v4.new_markdown_cell(
        "## Data: paragraphs with sense-tagged spans\n\n"
        "Token masks come from the tokenizer's character offsets: a content token is "
        "in-concept when it overlaps a tagged span."
    ),
    nbf.v4.new_code_cell(
        "ds = load_dataset('wordnet-supersenses')\n"
        "train = ds.select(ds.split_indices('train')[:N_TRAIN])\n"
        "cal = ds.select(ds.split_indices('cal')[:N_CAL])\n"
        "test = ds.select(ds.split_indices('test')[:N_TEST])\n"
        "masks = {name: token_masks(part, lens.content_offsets(part.texts))\n"
        "         for name, part in [('train', train), ('cal', cal), ('test', test)]}\n"
        "print(len(ds.concepts), 'concepts:', ', '.join(ds.concepts))\n"
        "print(train.texts[0][:300])"
    ),
    nbf.v4.new_markdown_cell(
        "## Pass 1 over TRAIN: normalisation statistics and a bounded token sample\n\n"
        "Both sinks receive every layer's residual during the same forward pass; "
        "only their statistics and the capped reservoir survive."
    ),
    nbf.v4.new_code_cell(
        "stats = NormStatsSink()\n"
        "collector = TokenCollector(masks['train'], torch.as_tensor(train.labels), cap_in=500, cap_neg=5000)\n"
        "lens.stream(train.texts, [stats, collector], progress=False)\n"
        "normalizer, sample = stats.result(), collector.result()\n"
        "bank = LinearSeparatorConcepts(seed=0).fit(sample, normalizer, ds.concepts).bank_\n"
        "print('token sample:', tuple(sample.embeddings.shape), '-> concept bank:', tuple(bank.vectors.shape))"
    ),
    nbf.v4.new_markdown_cell(
        "## Pass 2: scores of CAL and TEST, then SuperActivator calibration\n\n"
        "Per concept, the layer and sparsity N are chosen on CAL by F1; "
        "`tau(N)` is the (1 - N/100) quantile of the in-concept CAL scores."
    ),
    nbf.v4.new_code_cell(
        "cal_scores = lens.scores(cal.texts, bank, normalizer=normalizer, progress=False)\n"
        "test_scores = lens.scores(test.texts, bank, normalizer=normalizer, progress=False)\n"
        "cal_masks, test_masks = torch.cat(masks['cal']), torch.cat(masks['test'])\n"
        "cal_y, test_y = torch.as_tensor(cal.labels), torch.as_tensor(test.labels)\n"
        "print('kept per test token:', tuple(test_scores.tokens.shape), '(layers, tokens, concepts)')\n\n"
        "superact = SuperActivatorDetector().fit(cal_scores, cal_y, cal_masks)\n"
        "baselines = {m: AggregatorDetector(method=m).fit(cal_scores, cal_y) for m in ('max', 'mean', 'last')}\n"
        "rows = {'superact': detection_metrics(superact.predict(test_scores), test_y)['weighted_f1']}\n"
        "rows |= {m: detection_metrics(d.predict(test_scores), test_y)['weighted_f1'] for m, d in baselines.items()}\n"
        "for method, f1 in rows.items():\n"
        "    print(f'{method:>9}: weighted F1 on test = {f1:.3f}')"
    ),
    nbf.v4.new_markdown_cell(
        "## SuperActivator tokens of a few test samples\n\n"
        "Red = high score on the concept at its calibrated layer; outlined = above "
        "`tau(N)` (a SuperActivator); underlined = inside the tagged span."
    ),
    nbf.v4.new_code_cell(
        "def show(i, c):\n"
        "    layer = int(superact.layer_[c])\n"
        "    pos = test_scores.layers.index(layer)\n"
        "    s = test_scores.sample(i)[pos, :, c]\n"
        "    batch = lens.tokenize([test.texts[i]])\n"
        "    toks = lens.tokenizer.convert_ids_to_tokens(batch.input_ids[0][batch.content_mask[0]].tolist())\n"
        "    title = f'{ds.concepts[c]} | layer {layer} | N = {float(superact.n_[c]):g}%'\n"
        "    display(HTML(token_heatmap_html(toks, s.tolist(), threshold=float(superact.threshold_[c]),\n"
        "                                    in_concept=masks['test'][i][:, c].tolist(), title=title)))\n\n"
        "shown = 0\n"
        "for c in range(len(ds.concepts)):\n"
        "    positives = torch.nonzero(test_y[:, c]).flatten().tolist()\n"
        "    if positives and shown < 3:\n"
        "        show(positives[0], c)\n"
        "        shown += 1"
    ),
    nbf.v4.new_markdown_cell(
        "## In-concept vs out-of-concept scores by layer\n\n"
        "Out-of-concept = every token of the samples *without* the concept. The "
        "in-concept bulk overlaps it; the upper tail separates."
    ),
    nbf.v4.new_code_cell(
        "c = ds.concepts.index('noun.animal')\n"
        "dist = activation_distributions(test_scores, test_y, test_masks, c)\n"
        "fig = plot_distributions(dist, title='noun.animal (linear separator), test')"
    ),
]

nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
Path(__file__).with_name("01_attach_hooks.ipynb").write_text(nbf.writes(nb))
