"""Train the seeds' iris classifier and save it into the dosirak model store."""

from sklearn import datasets
from sklearn.linear_model import LogisticRegression

import dosirak


def main() -> None:
    iris = datasets.load_iris()
    clf = LogisticRegression(max_iter=1000, random_state=0).fit(iris.data, iris.target)
    model = dosirak.sklearn.save_model(
        "iris_clf",
        clf,
        labels={"owner": "demo", "stage": "dev"},
        metadata={"accuracy": float(clf.score(iris.data, iris.target)), "dataset": "iris"},
        signatures={"predict": {"batchable": True, "batch_dim": 0}},
    )
    print(f"saved {model.tag} at {model.path}")


if __name__ == "__main__":
    main()
