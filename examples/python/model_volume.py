"""Weights in a volume: one function trains a small PyTorch model and writes its weights
into a gust.Volume; a class in another container loads them from the volume and serves
predictions. Nothing is downloaded at run time: torch is Debian's python3-torch, built
into the image once, and the weights never leave this machine's volume.

    gust run examples/python/model_volume.py
"""
import gust

app = gust.App("torch-volume")
image = gust.Image.debian_slim().apt_install("python3-torch")
weights = gust.Volume.from_name("torch-weights", create_if_missing=True)


@app.function(image=image, volumes={"/weights": weights}, memory=2048, cpu=1, timeout=300)
def train(slope: float, intercept: float) -> dict:
    """Fits y = slope x + intercept and commits the weights as a new volume version."""
    import torch
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    y = slope * x + intercept
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    torch.save(net.state_dict(), "/weights/linear.pt")
    weights.commit()
    return {"torch": str(torch.__version__), "weight": round(net.weight.item(), 3),
            "bias": round(net.bias.item(), 3)}


@app.cls(image=image, volumes={"/weights": weights}, memory=2048, cpu=1, timeout=300)
class Predictor:
    @gust.enter()
    def load(self):
        import torch
        weights.reload()  # the latest committed version, whenever this container started
        self.net = torch.nn.Linear(1, 1)
        self.net.load_state_dict(torch.load("/weights/linear.pt"))
        self.net.eval()

    @gust.method()
    def predict(self, xs):
        import torch
        with torch.no_grad():
            out = self.net(torch.tensor(xs, dtype=torch.float32).unsqueeze(1))
        return [round(v, 3) for v in out.squeeze(1).tolist()]


@app.local_entrypoint()
def main():
    print("trained:", train.remote(3.0, 2.0))
    print("predict [0, 1, 2]:", Predictor().predict.remote([0.0, 1.0, 2.0]))
    print("volume:", sorted(e.path for e in weights.listdir("/")))
