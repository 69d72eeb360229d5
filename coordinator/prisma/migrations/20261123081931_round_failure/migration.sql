-- CreateTable
CREATE TABLE "round_failure" (
    "id" TEXT NOT NULL,
    "round_id" TEXT NOT NULL,
    "site_id" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "message" TEXT NOT NULL,
    "reported_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "round_failure_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "round_failure_round_id_site_id_key" ON "round_failure"("round_id", "site_id");

-- AddForeignKey
ALTER TABLE "round_failure" ADD CONSTRAINT "round_failure_round_id_fkey" FOREIGN KEY ("round_id") REFERENCES "round"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "round_failure" ADD CONSTRAINT "round_failure_site_id_fkey" FOREIGN KEY ("site_id") REFERENCES "site"("id") ON DELETE NO ACTION ON UPDATE CASCADE;
